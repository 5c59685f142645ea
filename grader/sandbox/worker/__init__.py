"""What runs in the sandbox's worker and the student's child: the fork server, the spare child
that becomes a session's, the child serving requests, the autograd watch, lecture-code execution,
the process helpers. Imports only grader.lecture, grader.sandbox.wire and grader.sandbox.limits:
what a student's file sees loaded is what this package imported.
"""
