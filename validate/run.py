"""`python validate/run.py ...`: the validator's command (see validate/validator/command.py and `validate.run`)."""

import sys

from msn_deploy.validate.validator.command import main

if __name__ == "__main__":
    sys.exit(main())
