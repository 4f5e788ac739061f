# A buggy function: its data is not base64.
def lambda_handler(event, context):
    return {'records': [{'recordId': r['recordId'], 'result': 'Ok', 'data': 'not base64!'} for r in event['records']]}
