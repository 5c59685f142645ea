"""Student code in a separate, limited process: the grader's side (runner, session, limits,
bubblewrap, the wire format). What runs in the worker and the student's child is in
grader.sandbox.worker, which imports only grader.lecture, the wire format and the limits.
"""
