"""Data for the MLLM: ChatML template, images, preprocessing, collators, dataset readers.

Formats are the exercise's (EXERCISE_SPEC §1-2), so its files drop in. The package re-exports
nothing: a job's code inputs are the modules it imports, so importing one module must not import
them all.
"""
