"""Starts NX-27017, the MongoDB wire-protocol server over SQLite the tests use.

Usage: python nx27017.py --host 127.0.0.1 --port PORT --data-dir DIR --pid-file FILE
(the arguments are NX-27017's own). The fallback query tier is forced first: NX-27017's SQL
tier ignores `$match` on dates in `aggregate`.
"""

import neosqlite.collection.query_helper as query_helper
from nx_27017 import nx_27017

query_helper.set_force_fallback(True)
nx_27017.main()
