"""Planning: geometry in, device programs out.

The data flow is the folder's order of use: ``mesh_io`` (files to a Mesh) ->
``mesh_repair`` (checks and safe repairs) -> ``layer_heights`` + ``slicing``
(a Numba sweep: Mesh to a LayerStack of closed loops) -> ``regions`` (walls,
skins, sparse areas) -> ``infill`` (fill lines) -> ``toolpath`` (ordered paths
per layer) -> ``fdm_gcode`` (Marlin G-code and a Program, timed by ``motion``).
``fdm`` runs the whole chain; ``model`` holds the types that pass between steps.
"""
