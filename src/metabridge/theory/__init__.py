"""Theory lab: runnable, checked versions of two theoretical claims.

* :mod:`.linreg`, :mod:`.linreg_sweep`: Gao & Sener (NeurIPS 2020), DRS vs one-step
  MAML in meta-linear regression: closed-form estimators, exact expected test losses,
  P(MAML beats DRS) heatmaps and the modeling/optimization error split.
* :mod:`.closeness`: Wang, Zhao & Li (ICML 2021), MTL and ANIL share one optimization
  formulation; prediction gap of MTL/ANIL/MAML networks vs width and depth.
* :mod:`.ntk`: NTK-parameterised MLPs, their empirical neural tangent kernel (``torch.func``)
  and the closed-form prediction of gradient descent on the linearised network.
* :mod:`.commands`: the settings and run functions of ``metabridge theory linreg``
  (:func:`~.commands.run_linreg`) and ``metabridge theory closeness`` (:func:`~.commands.run_closeness`).
"""
