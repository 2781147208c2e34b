// Deterministic autopilot simulation, shard 1 of 2 (see sim/autopilot-shard-test.ts).
import { autopilotShardTest } from './sim/autopilot-shard-test.js';

autopilotShardTest(1);
