# A buggy function: it answers the first record of each batch twice.
import process_record_impl


def lambda_handler(event, context):
    records = process_record_impl.ok(event['records'])
    return {'records': records + records[:1]}
