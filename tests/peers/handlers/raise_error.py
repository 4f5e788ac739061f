# A function that always fails (an unhandled exception: X-Amz-Function-Error).
def lambda_handler(event, context):
    raise ValueError('cannot process this batch')
