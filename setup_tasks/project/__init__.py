"""What the dbt project defines, as plain data: context, manifest, graph, fingerprints, input files.

Pure: reads project files, never writes, never runs dbt. Imports only the leaves.
"""
