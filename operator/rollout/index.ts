// The rollout of releases and of the re-wrap flag (DESIGN §6): a pure state machine.
export * from './release.js';
export * from './machine.js';
