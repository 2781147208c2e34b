// Autopilot: keeps the Raft configuration equal to the declared members (see decide.ts).
export { autopilotState, decideAutopilot } from './decide.js';
export type { AutopilotAction, AutopilotInput, AutopilotServer, AutopilotState } from './decide.js';
export { autopilotInputFrom } from './input.js';
export type { AutopilotObservations, AutopilotStatus, MemberObservation } from './input.js';
