"""Tasks: the model, parsing a list (whole or as an indexed JSONL stream), and loading one.

model   Task and the result row's fields
lines   a byte stream cut into task lines (shared by both readers)
parse   a whole list, and the one rule for turning a line into a task
index   the sparse line index of a list too large to hold, and its persisted codec
load    `load_task_list`: the container-cached list a leg works from
"""

from worker.tasks.index import JsonlIndex, decode_index, encode_index, index_jsonl
from worker.tasks.load import INDEX_STRIDE, IndexedTaskList, TaskList, index_key, load_task_list
from worker.tasks.model import MAX_TASK_BYTES, RESULT_FIELDS, S3Object, Task
from worker.tasks.parse import parse_task_list

__all__ = [
    "INDEX_STRIDE",
    "MAX_TASK_BYTES",
    "RESULT_FIELDS",
    "IndexedTaskList",
    "JsonlIndex",
    "S3Object",
    "Task",
    "TaskList",
    "decode_index",
    "encode_index",
    "index_jsonl",
    "index_key",
    "load_task_list",
    "parse_task_list",
]
