"""The replay verifier: replay a run, compare it with its recording, explain divergences.

``pinrun.replay(run_id, store=...)`` is :func:`pinrun.verifier.seeded.replay`: the engine's
replay (:func:`pinrun.verifier.replayer.replay`) under the run's recorded hash seed.
(The package is not named ``replay``, so that ``pinrun.replay`` stays the function.)
"""
