"""The experiment plan behind the Snakemake rules: the world's table of files, the stages and runs
a config asks for, and the library code each rule's entry point runs."""
