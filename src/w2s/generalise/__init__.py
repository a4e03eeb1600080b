"""``w2s generalise``: weak-to-strong generalisation on human-labelled data (Burns et al. 2023;
Somerstep et al. 2024), measured where its own measure, the performance gap recovered, is
defined.

The protocol (:mod:`w2s.generalise.protocol`), each step resumable:

1. a **weak supervisor** is trained on ground truth (weak-train);
2. it labels strong-train, keeping soft labels;
3. the **strong student** is trained on those labels, once per method (naive cross-entropy,
   Burns' auxiliary confidence loss, bootstrapping through an intermediate model, refinement
   by the strong model's in-context labels, generalised cross-entropy);
4. the **ceiling**, the strong model, is trained on ground truth (strong-train);
5. every model is evaluated on test against ground truth: accuracy, ROC AUC, calibration, the
   performance gap recovered PGR = (student - weak) / (ceiling - weak) with bootstrap
   intervals over test items and training seeds, and the deception split.

Models are trained either as linear probes on frozen features (:mod:`w2s.generalise.probe`,
seconds once the features are cached) or fine-tuned as sequence classifiers
(:mod:`w2s.generalise.finetune`). In the pairwise form the strong student is a reward model,
exported as a ``transformers`` sequence classifier (:mod:`w2s.generalise.reward`) that
``--reward-model`` and eval configs take as a guide: weak supervision turned into a strong
guide, then spent at inference (:mod:`w2s.generalise.search`).
"""
