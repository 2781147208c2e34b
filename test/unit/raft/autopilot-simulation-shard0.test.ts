// Deterministic autopilot simulation, shard 0 of 2 (see sim/autopilot-shard-test.ts).
import { autopilotShardTest } from './sim/autopilot-shard-test.js';

autopilotShardTest(0);
