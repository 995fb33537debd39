"""Why unlearning fails: the paper's two explanations measured on a sweep (docs/explain.md).

    raysweep explain SWEEP [--draws 3] [--m 32] [--batch-size 128] [--alphas 0,0.1,...,1] [--out DIR]

H1 (model shift): ||θ_initial − θ_retrain|| against retraining without k random clean samples (random_refs),
in parameters and in predictions; H2 (orthogonal subspace): the share of Δ = θ_retrain − θ_initial inside the
span of retain / forget gradients at θ_initial (geometry); each method's best update against Δ; and the
straight line θ(α) from θ_initial to θ_retrain (run, figure).
"""
