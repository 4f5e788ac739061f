# enrich, but slow while a file named "slow" exists in the working
# directory: it first leaves a file "called", so that a test knows records
# are waiting for its answer.
import os
import time

import enrich


def lambda_handler(event, context):
    if os.path.exists('slow'):
        open('called', 'w').close()
        time.sleep(10)
    return enrich.lambda_handler(event, context)
