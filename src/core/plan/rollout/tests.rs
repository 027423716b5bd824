//! The rollout's planning: batches, resumption from labels, quarantine, the way back.
