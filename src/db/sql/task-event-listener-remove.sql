-- tr.events: this TaskRelay's last subscriber left (0019).
delete from :"schema".task_event_listeners
 where id = $1::uuid
