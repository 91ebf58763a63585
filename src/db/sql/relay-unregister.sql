-- Relay stop: inserts must wake the remaining relays again at once.
delete from :"schema".relays where relay_id = $1
