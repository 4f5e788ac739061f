# Checks the event's shape as Firehose sends it, and answers each record
# with the event's fields and the record's own, so that a test sees exactly
# what the function was given.
import base64
import json

TOP = {'invocationId', 'deliveryStreamArn', 'region', 'records', 'sourceKinesisStreamArn'}
RECORD = {'recordId', 'approximateArrivalTimestamp', 'data', 'kinesisRecordMetadata'}


def lambda_handler(event, context):
    assert set(event) <= TOP, sorted(event)
    output = []
    for record in event['records']:
        assert set(record) <= RECORD, sorted(record)
        echoed = {
            'invocationId': event['invocationId'],
            'deliveryStreamArn': event['deliveryStreamArn'],
            'sourceKinesisStreamArn': event.get('sourceKinesisStreamArn'),
            'region': event['region'],
            'recordId': record['recordId'],
            'approximateArrivalTimestamp': record['approximateArrivalTimestamp'],
            'kinesisRecordMetadata': record.get('kinesisRecordMetadata'),
            'data': base64.b64decode(record['data']).decode('utf-8'),
        }
        output.append({
            'recordId': record['recordId'],
            'result': 'Ok',
            'data': base64.b64encode(json.dumps(echoed).encode('utf-8')).decode('utf-8'),
        })
    return {'records': output}
