//! The paper's experiments as library calls: the permutation ablation (Glow §5.1, Figure 3).

pub mod ablation;
