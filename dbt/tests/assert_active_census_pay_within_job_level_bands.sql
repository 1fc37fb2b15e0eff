{#- Every active employee's annual pay must fall inside some job level's band,
    or the simulation cannot place them on a level. Returns the offenders. -#}
select c.employee_id, c.employee_gross_compensation
from {{ ref('stg_census_data') }} as c
where c.active
  and not exists (
      select 1
      from {{ ref('stg_config_job_levels') }} as l
      where c.employee_gross_compensation >= l.min_compensation
        and c.employee_gross_compensation <= l.max_compensation
  )
