{#- Every raw census record whose employee_id occurs more than once, with the
    rank that decided which one stg_census_data keeps. Empty when the census
    has no duplicate ids. -#}
select
    employee_id,
    record_rank as duplicate_rank,
    record_count,
    record_rank = 1 as is_kept_record,
    employee_ssn,
    employee_hire_date,
    employee_termination_date,
    employee_gross_compensation,
    active
from ({{ census_records_ranked() }}) as ranked
where record_count > 1
