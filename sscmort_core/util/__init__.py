"""Small shared helpers every stage may use: the progress callback type, the executors that
run batch work (:mod:`.executors`: the local worker pool, or Ray), the model cache, hashing.

May import: the ground floor (errors, labels, folds, predictions) and the standard library,
numpy; heavy libraries only inside functions. The one exception, :mod:`.ray_executor`, imports
Ray at its top and is itself imported only inside
:func:`sscmort_core.util.executors.open_executor` (Ray is an optional extra).
"""
