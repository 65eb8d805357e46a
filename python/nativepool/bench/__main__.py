"""python -m nativepool.bench"""
import sys

from . import main

sys.exit(main())
