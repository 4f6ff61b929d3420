import sys

from sprint.study.cli import main

sys.exit(main())
