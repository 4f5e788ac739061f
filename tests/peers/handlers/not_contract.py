# A buggy function: it answers a list, not {"records": [...]}.
def lambda_handler(event, context):
    return [r['recordId'] for r in event['records']]
