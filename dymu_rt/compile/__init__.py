"""dymu_rt.compile: from a trained run to a bundle (DESIGN.md §2 steps 2-5, §4).

* ``architecture``  the tree IR (:class:`Architecture`, topology ids salted by the model
  structure) and :func:`materialize` (static module of the used nodes).
* ``fold``          BN folding, one walk over ConvBNs; the same formula on raw tensors
  (:func:`bind_slot_weights`) for binding a preference's weights by name.
* ``export``        ONNX export of topology graphs and of the controller.
* ``weights``       the bundle's shared weight file: graphs at the anchor, tensors stored once
  and referenced as ONNX external data.
* ``build``         :func:`build_bundle`: grid -> topologies -> graphs, atomic and resumable.
* ``bundle``        bundle layout, :func:`read_manifest`, :func:`verify_bundle`.
* ``describe``, ``resource_map``  what ``dymu-rt inspect`` and ``dymu-rt plot`` show.
"""
