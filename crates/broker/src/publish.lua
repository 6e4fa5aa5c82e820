-- Appends one event to the cluster's log and applies its state writes, in one
-- atomic step, so that the shared state and the log never disagree.
--
-- KEYS[1]   the log (a stream)
-- KEYS[1+i] the map (a hash) of the i-th state write
-- ARGV[1]   how many entries the log keeps, about
-- ARGV[2]   the event
-- ARGV[3]   the node that applied it already (a replay after an outage), or ''
-- then three arguments per state write: operation, field, value
--   put    sets the field to the value
--   add    sets the field to the value unless it has one
--   remove deletes the field
--   clear  deletes the whole map (field and value unused)
--   merge  sets the field to the old JSON object with the new one's keys laid over it
for i = 2, #KEYS do
  local at = 4 + (i - 2) * 3
  local op, field, value = ARGV[at], ARGV[at + 1], ARGV[at + 2]
  if op == 'put' then
    redis.call('HSET', KEYS[i], field, value)
  elseif op == 'add' then
    redis.call('HSETNX', KEYS[i], field, value)
  elseif op == 'clear' then
    redis.call('DEL', KEYS[i])
  elseif op == 'remove' then
    redis.call('HDEL', KEYS[i], field)
  elseif op == 'merge' then
    local old = redis.call('HGET', KEYS[i], field)
    if old then
      local merged = cjson.decode(old)
      for k, v in pairs(cjson.decode(value)) do
        merged[k] = v
      end
      value = cjson.encode(merged)
    end
    redis.call('HSET', KEYS[i], field, value)
  else
    return redis.error_reply('unknown state write ' .. tostring(op))
  end
end
if ARGV[3] ~= '' then
  return redis.call('XADD', KEYS[1], 'MAXLEN', '~', ARGV[1], '*', 'e', ARGV[2], 'o', ARGV[3])
end
return redis.call('XADD', KEYS[1], 'MAXLEN', '~', ARGV[1], '*', 'e', ARGV[2])
