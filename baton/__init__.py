"""`baton`, the command line: submit, start, watch, read and cancel runs; the local stack.

Not part of the Lambda zip. It imports the runtime (`worker`) for its types and
rules, and the dev stack (`devstack`) only for `demo`, `local` and `stack`,
which need `pip install .[local]`.
"""
