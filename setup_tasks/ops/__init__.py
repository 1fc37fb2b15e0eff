"""What setup tells people about a run and a database: run reports, status, the diagram, clearing.

Facts and text only, no doit: the ``cli`` layer turns them into tasks. Imports
``validation`` and below.
"""
