"""dymu_rt.compile: from a trained run to a bundle (DESIGN.md §2 steps 2-5, §4). Needs the
``[train]`` extra (torch, onnx); imports :mod:`dymu_rt.backends` and :mod:`dymu_rt.bundle`.

* ``architecture``  the tree IR (:class:`Architecture`, topology ids salted by the model
  structure) and :func:`materialize` (static module of the used nodes).
* ``fold_modules``  BN folding, one walk over ConvBNs (the formula itself, on arrays, is
  :mod:`dymu_rt.core.bn_fold`, which the runtime binds weights with).
* ``export``        ONNX export of topology graphs and of the controller.
* ``weights``       the bundle's shared weight file: graphs at the anchor, tensors stored once
  and referenced as ONNX external data.
* ``build``         the one build, :func:`write_bundle`: a run lowered by its method
  (:class:`GridLowering`: grid -> topologies -> graphs; :class:`StaticLowering`: one
  static architecture) -> bundle (-> engines for backends that build ahead), atomic,
  journaled and resumable. :func:`dymu_rt.methods.build_bundle` lowers a run and calls it.
* ``bundle_writer`` what both kinds of bundle share: the out-folder checks, the journal, removal of
  owned files only, the engines step, the manifest head, the summary.
* ``calibrate``     INT8 calibration sets and Q/DQ graphs per topology (the manifest's
  ``int8`` section).

What ``dymu-rt inspect`` shows for a preset or a run is the use case :mod:`dymu_rt.app.inspect`.
"""
