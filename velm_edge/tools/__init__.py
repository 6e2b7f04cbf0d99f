"""The tools room: the ``velm-edge`` command line and the reports behind it.

cli (the commands) -> flags (kebab-case flags from dataclass fields, help with each default once),
info (what a bundle holds), bench (where a caption's time goes) with cold_start (its fresh-process
probe), doctor (what this machine offers), tflite_model (a .tflite file's operators, read without an
interpreter).

May import every room.  Nothing imports tools except ``velm_convert`` (flags, tflite_model, info).
"""
