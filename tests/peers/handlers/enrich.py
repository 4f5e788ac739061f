# A Firehose-style transform with everything a processing Lambda does:
# records whose "n" is odd are Dropped, records with "bad" are
# ProcessingFailed, the others gain "enriched": true and a newline, and are
# partitioned by customer through metadata.partitionKeys.
import base64
import json


def lambda_handler(event, context):
    output = []
    for record in event['records']:
        payload = json.loads(base64.b64decode(record['data']))
        if payload.get('bad'):
            output.append({'recordId': record['recordId'], 'result': 'ProcessingFailed', 'data': record['data']})
            continue
        if payload.get('n', 0) % 2 == 1:
            output.append({'recordId': record['recordId'], 'result': 'Dropped', 'data': record['data']})
            continue
        payload['enriched'] = True
        data = (json.dumps(payload, separators=(',', ':')) + '\n').encode('utf-8')
        output.append({
            'recordId': record['recordId'],
            'result': 'Ok',
            'data': base64.b64encode(data).decode('utf-8'),
            'metadata': {'partitionKeys': {'customer': str(payload.get('customer', 'none'))}},
        })
    return {'records': output}
