// Applying committed entries to state.db, then telling whoever waits.
import { UnknownCommandError } from '../../store/commands.js';
import type { ApplyResult } from '../../store/results.js';
import type { StateMachine } from '../../store/state-machine.js';
import { decodeConfChange, type ConfChange, type Entry, type RaftNode } from '../core/index.js';
import { UndecodableEntryError } from '../replicator.js';
import type { AppliedIndex } from './applied.js';
import type { PeerAddresses } from './peer-addresses.js';
import type { PendingProposals } from './pending-proposals.js';

export interface ApplyDeps {
  sm: Pick<StateMachine, 'batch' | 'applyEntry' | 'applyNoop' | 'applyMembership'>;
  node: Pick<RaftNode, 'applyConfChange'>;
  peers: PeerAddresses;
  pending: PendingProposals;
  applied: AppliedIndex;
  /** The core's configuration changed (a read lease counted in the old one stops vouching). */
  onConfChange?: () => void;
}

/**
 * Applies the committed entries of one Ready in ONE state.db transaction
 * (each entry still records its own applied index). Waiters hear of results
 * only after that transaction committed. An entry this release cannot
 * decode stops applying right there: the entries before it commit, nothing
 * after it is applied, and UndecodableEntryError is thrown.
 *
 * Nothing outside state.db changes until the transaction committed (the
 * core and the transport learn of membership changes afterwards), so a
 * batch that failed and rolled back can be applied again as it was.
 */
export function applyCommitted(ents: readonly Entry[], d: ApplyDeps): void {
  const results: ApplyResult[] = [];
  const confChanges: ConfChange[] = [];
  let stopAt: Error | null = null;
  let peersChanged = false;
  d.sm.batch(() => {
    for (const e of ents) {
      let result: ApplyResult = { ok: true };
      if (e.type === 'normal') {
        try {
          result = d.sm.applyEntry(e.index, e.term, e.data);
        } catch (err) {
          if (!(err instanceof UnknownCommandError)) throw err;
          // Nothing of this entry was written (decoding comes first): commit the prefix.
          stopAt = new UndecodableEntryError(`cannot decode committed entry ${e.index}: ${err.message}; stopped applying`);
          return;
        }
        if (result.ok && result.note === 'peers') peersChanged = true;
      } else if (e.type === 'noop') {
        d.sm.applyNoop(e.index, e.term);
      } else {
        const cc = decodeConfChange(e.data);
        d.sm.applyMembership(e.index, e.term, cc);
        confChanges.push(cc);
      }
      results.push(result);
    }
  });
  for (const cc of confChanges) {
    d.node.applyConfChange(cc);
    d.onConfChange?.();
    if (cc.type === 'removeNode') d.peers.removed(cc.nodeId);
    else d.peers.invalidate();
  }
  if (peersChanged) d.peers.sync();
  const n = results.length;
  for (let k = 0; k < n; k++) d.pending.applied(ents[k]!.index, ents[k]!.term, results[k]!);
  if (n > 0) {
    const last = ents[n - 1]!;
    // Proposals at indexes below this one were overwritten by another leader's entries.
    d.pending.dropBelow(last.index);
    d.applied.advance(last.index);
  }
  if (stopAt) throw stopAt;
}
