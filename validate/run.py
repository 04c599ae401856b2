"""`python validate/run.py ...`: the validator's command (see validate/validator/runner.py and `validate.run`)."""

import sys

from msn_deploy.validate.validator.runner import main

if __name__ == "__main__":
    sys.exit(main())
