"""Student code in a separate, limited process: the grader's side. ``session`` sends a
submission's requests to its child and reads the outcomes (``output_sink`` keeps what it prints);
``runner`` keeps the worker that forks the children (``launch`` starts it, in ``bubblewrap`` where
it works; ``uids`` hands out the children's uids; ``children`` are the handles on them); ``limits``
and ``wire`` are shared with the worker. What runs in the worker and the student's child is in
grader.sandbox.worker, which imports only grader.lecture, the wire format and the limits.
"""
