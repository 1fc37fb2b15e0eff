select
    scenario_id,
    scenario_name,
    description,
    lower(status) as status,
    base_scenario_id
from {{ ref('scenario_meta') }}
