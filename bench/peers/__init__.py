"""The crawlers baton is compared with, one script each, run as subprocesses by bench.versus.

Each takes `--urls FILE --concurrency default|N` and prints one JSON object (see
`common.Summary`). They extract the same fields (title, description, h1, absolute
links) and need only what their own virtualenv holds: `plain_requests` runs in the
project's venv (requests and selectolax, as baton), the others in `.venv-bench`.
"""
