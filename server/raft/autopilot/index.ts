// Autopilot: keeps the Raft configuration equal to the declared members (see decide.ts).
export { decideAutopilot } from './decide.js';
export type { AutopilotAction, AutopilotInput, AutopilotServer } from './decide.js';
