/*-------------------------------------------------------------------------
 *
 * endpoint.c
 *		  The six WHOOP record types: their API paths and their columns.
 *
 * Columns are the API fields with nested objects (score, stage_summary,
 * sleep_needed, zone_durations) flattened to their leaf names, which are
 * unique within each record type, plus "raw" with the whole record.  The
 * types follow WHOOP's OpenAPI document (int64 -> bigint, int32 -> integer,
 * float -> double precision).
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "whoop_fdw.h"

#define JSON(name, path, type)	{name, path, type, WHOOP_FIELD_JSON}
#define RAW_FIELD				{"raw", NULL, "jsonb", WHOOP_FIELD_RAW}

static const WhoopField cycle_fields[] = {
	JSON("id", "id", "bigint"),
	JSON("user_id", "user_id", "bigint"),
	JSON("created_at", "created_at", "timestamptz"),
	JSON("updated_at", "updated_at", "timestamptz"),
	JSON("start", "start", "timestamptz"),
	JSON("end", "end", "timestamptz"),
	JSON("timezone_offset", "timezone_offset", "text"),
	JSON("score_state", "score_state", "text"),
	JSON("strain", "score.strain", "double precision"),
	JSON("kilojoule", "score.kilojoule", "double precision"),
	JSON("average_heart_rate", "score.average_heart_rate", "integer"),
	JSON("max_heart_rate", "score.max_heart_rate", "integer"),
	RAW_FIELD
};

static const WhoopField recovery_fields[] = {
	JSON("cycle_id", "cycle_id", "bigint"),
	JSON("sleep_id", "sleep_id", "uuid"),
	JSON("user_id", "user_id", "bigint"),
	JSON("created_at", "created_at", "timestamptz"),
	JSON("updated_at", "updated_at", "timestamptz"),
	JSON("score_state", "score_state", "text"),
	JSON("user_calibrating", "score.user_calibrating", "boolean"),
	JSON("recovery_score", "score.recovery_score", "double precision"),
	JSON("resting_heart_rate", "score.resting_heart_rate", "double precision"),
	JSON("hrv_rmssd_milli", "score.hrv_rmssd_milli", "double precision"),
	JSON("spo2_percentage", "score.spo2_percentage", "double precision"),
	JSON("skin_temp_celsius", "score.skin_temp_celsius", "double precision"),
	RAW_FIELD
};

static const WhoopField sleep_fields[] = {
	JSON("id", "id", "uuid"),
	JSON("cycle_id", "cycle_id", "bigint"),
	JSON("v1_id", "v1_id", "bigint"),
	JSON("user_id", "user_id", "bigint"),
	JSON("created_at", "created_at", "timestamptz"),
	JSON("updated_at", "updated_at", "timestamptz"),
	JSON("start", "start", "timestamptz"),
	JSON("end", "end", "timestamptz"),
	JSON("timezone_offset", "timezone_offset", "text"),
	JSON("nap", "nap", "boolean"),
	JSON("score_state", "score_state", "text"),
	JSON("total_in_bed_time_milli", "score.stage_summary.total_in_bed_time_milli", "integer"),
	JSON("total_awake_time_milli", "score.stage_summary.total_awake_time_milli", "integer"),
	JSON("total_no_data_time_milli", "score.stage_summary.total_no_data_time_milli", "integer"),
	JSON("total_light_sleep_time_milli", "score.stage_summary.total_light_sleep_time_milli", "integer"),
	JSON("total_slow_wave_sleep_time_milli", "score.stage_summary.total_slow_wave_sleep_time_milli", "integer"),
	JSON("total_rem_sleep_time_milli", "score.stage_summary.total_rem_sleep_time_milli", "integer"),
	JSON("sleep_cycle_count", "score.stage_summary.sleep_cycle_count", "integer"),
	JSON("disturbance_count", "score.stage_summary.disturbance_count", "integer"),
	JSON("baseline_milli", "score.sleep_needed.baseline_milli", "bigint"),
	JSON("need_from_sleep_debt_milli", "score.sleep_needed.need_from_sleep_debt_milli", "bigint"),
	JSON("need_from_recent_strain_milli", "score.sleep_needed.need_from_recent_strain_milli", "bigint"),
	JSON("need_from_recent_nap_milli", "score.sleep_needed.need_from_recent_nap_milli", "bigint"),
	JSON("respiratory_rate", "score.respiratory_rate", "double precision"),
	JSON("sleep_performance_percentage", "score.sleep_performance_percentage", "double precision"),
	JSON("sleep_consistency_percentage", "score.sleep_consistency_percentage", "double precision"),
	JSON("sleep_efficiency_percentage", "score.sleep_efficiency_percentage", "double precision"),
	RAW_FIELD
};

static const WhoopField workout_fields[] = {
	JSON("id", "id", "uuid"),
	JSON("v1_id", "v1_id", "bigint"),
	JSON("user_id", "user_id", "bigint"),
	JSON("created_at", "created_at", "timestamptz"),
	JSON("updated_at", "updated_at", "timestamptz"),
	JSON("start", "start", "timestamptz"),
	JSON("end", "end", "timestamptz"),
	JSON("timezone_offset", "timezone_offset", "text"),
	JSON("sport_name", "sport_name", "text"),
	JSON("sport_id", "sport_id", "integer"),
	JSON("score_state", "score_state", "text"),
	JSON("strain", "score.strain", "double precision"),
	JSON("average_heart_rate", "score.average_heart_rate", "integer"),
	JSON("max_heart_rate", "score.max_heart_rate", "integer"),
	JSON("kilojoule", "score.kilojoule", "double precision"),
	JSON("percent_recorded", "score.percent_recorded", "double precision"),
	JSON("distance_meter", "score.distance_meter", "double precision"),
	JSON("altitude_gain_meter", "score.altitude_gain_meter", "double precision"),
	JSON("altitude_change_meter", "score.altitude_change_meter", "double precision"),
	JSON("zone_zero_milli", "score.zone_durations.zone_zero_milli", "bigint"),
	JSON("zone_one_milli", "score.zone_durations.zone_one_milli", "bigint"),
	JSON("zone_two_milli", "score.zone_durations.zone_two_milli", "bigint"),
	JSON("zone_three_milli", "score.zone_durations.zone_three_milli", "bigint"),
	JSON("zone_four_milli", "score.zone_durations.zone_four_milli", "bigint"),
	JSON("zone_five_milli", "score.zone_durations.zone_five_milli", "bigint"),
	RAW_FIELD
};

static const WhoopField profile_fields[] = {
	JSON("user_id", "user_id", "bigint"),
	JSON("email", "email", "text"),
	JSON("first_name", "first_name", "text"),
	JSON("last_name", "last_name", "text"),
	RAW_FIELD
};

/* WHOOP's body measurement carries no user_id: the account supplies it */
static const WhoopField body_measurement_fields[] = {
	{"user_id", NULL, "bigint", WHOOP_FIELD_ACCOUNT_USER_ID},
	JSON("height_meter", "height_meter", "double precision"),
	JSON("weight_kilogram", "weight_kilogram", "double precision"),
	JSON("max_heart_rate", "max_heart_rate", "integer"),
	RAW_FIELD
};

/*
 * Recoveries have no id of their own: one is read through its cycle.  Sleep
 * also has /v2/cycle/{id}/sleep, but naps share the cycle id, so it cannot
 * stand in for a cycle_id qual on the sleep table.
 */
const WhoopEndpoint whoop_endpoints[] = {
	{"cycle", "/v2/cycle", NULL, "/v2/cycle/%s", "id", true, 1.0,
	cycle_fields, lengthof(cycle_fields)},
	{"recovery", "/v2/recovery", NULL, "/v2/cycle/%s/recovery", "cycle_id", false, 1.0,
	recovery_fields, lengthof(recovery_fields)},
	{"sleep", "/v2/activity/sleep", NULL, "/v2/activity/sleep/%s", "id", true, 1.2,
	sleep_fields, lengthof(sleep_fields)},
	{"workout", "/v2/activity/workout", NULL, "/v2/activity/workout/%s", "id", true, 1.0,
	workout_fields, lengthof(workout_fields)},
	{"profile", NULL, "/v2/user/profile/basic", NULL, NULL, false, 0.0,
	profile_fields, lengthof(profile_fields)},
	{"body_measurement", NULL, "/v2/user/measurement/body", NULL, NULL, false, 0.0,
	body_measurement_fields, lengthof(body_measurement_fields)},
};

const int	whoop_endpoint_count = lengthof(whoop_endpoints);

/*
 * whoop_endpoint_by_name finds an endpoint by its name, or returns NULL.
 */
const WhoopEndpoint *
whoop_endpoint_by_name(const char *name)
{
	for (int i = 0; i < whoop_endpoint_count; i++)
	{
		if (strcmp(whoop_endpoints[i].name, name) == 0)
			return &whoop_endpoints[i];
	}
	return NULL;
}

/*
 * whoop_endpoint_field returns the index of the field a column maps to, or
 * -1 when the record type has no such field.
 */
int
whoop_endpoint_field(const WhoopEndpoint *endpoint, const char *column)
{
	for (int i = 0; i < endpoint->nfields; i++)
	{
		if (strcmp(endpoint->fields[i].name, column) == 0)
			return i;
	}
	return -1;
}

/*
 * whoop_endpoint_names lists the endpoint names, for hints.
 */
char *
whoop_endpoint_names(void)
{
	StringInfoData buf;

	initStringInfo(&buf);
	for (int i = 0; i < whoop_endpoint_count; i++)
		appendStringInfo(&buf, "%s%s", i > 0 ? ", " : "", whoop_endpoints[i].name);
	return buf.data;
}
