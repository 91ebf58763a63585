-- Resume a queue ($2 null) or one group of it (0013 resume_queue()).
select :"schema".resume_queue($1, $2) as resumed
