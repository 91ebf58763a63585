-- Worker stop: it no longer serves its queues (status and stats say so at once).
delete from :"schema".workers where id = $1
