"""The replay verifier: replay a run, compare it with its recording, explain divergences.

``pinrun.replay(run_id, store=...)`` is :func:`pinrun.verifier.replayer.replay`.
(The package is not named ``replay``, so that ``pinrun.replay`` stays the function.)
"""
