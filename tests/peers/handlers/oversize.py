# A function whose response is over 6 MB.
import base64


def lambda_handler(event, context):
    big = base64.b64encode(b'x' * (5 * 1024 * 1024)).decode()
    return {'records': [{'recordId': r['recordId'], 'result': 'Ok', 'data': big} for r in event['records']]}
