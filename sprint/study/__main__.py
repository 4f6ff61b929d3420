import sys

from sprint.study import main

sys.exit(main())
