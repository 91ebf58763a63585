-- Which of the ids an enqueue's dependsOn names are not tasks.
select wanted.id
  from unnest($1::bigint[]) as wanted(id)
 where not exists (select 1 from :"schema".tasks t where t.id = wanted.id)
 order by wanted.id
