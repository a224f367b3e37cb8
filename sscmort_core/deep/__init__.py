"""Deep models of chest CT: settings without torch (:mod:`.config`), slice sampling and the
cached model inputs (:mod:`.sampling`, :mod:`.inputs`), the networks and losses
(:mod:`.nets`, :mod:`.losses`), the training loop (:mod:`.fit`) and runs (:mod:`.train`), the
registry on disk (:mod:`.registry`), inference (:mod:`.infer`) and Grad-CAM
(:mod:`.saliency`).

May import: the ground floor, util, store, scans, lungs, evaluation. Importing this package
loads nothing; torch loads with :mod:`.nets` and the modules built on it.
"""
