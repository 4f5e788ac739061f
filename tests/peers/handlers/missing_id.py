# A buggy function: it forgets the last record of each batch.
import process_record_impl


def lambda_handler(event, context):
    return {'records': process_record_impl.ok(event['records'])[:-1]}
