// Deterministic cluster simulation, shard 1 of 2 (see sim/shard-test.ts).
import { simulationShardTest } from './sim/shard-test.js';

simulationShardTest(1);
