"""Small shared helpers every stage may use: the progress callback type, the worker pool,
hashing.

May import: the ground floor (errors, labels, folds, predictions) and the standard library,
numpy; heavy libraries only inside functions.
"""
