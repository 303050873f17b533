"""The study kinds: one module each, found by the registry in ``compression.studies``.

Every module here that defines ``STUDY`` (an instance of ``compression.studies.kind.StudyKind``)
is a kind; nothing else lists them.
"""
