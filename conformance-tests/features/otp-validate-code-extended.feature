Feature: otp-gateway extensions to the CAMARA One Time Password SMS v1.1.0 tests - operation validateCode
  # Scope, cross-client ids, superseding across three sends, concurrent right answers.

  Background: Common validateCode setup
    Given an environment at "apiRoot"
    And the resource "/one-time-password-sms/v1/validate-code"
    And the header "Content-Type" is set to "application/json"
    And the header "Authorization" is set to a valid access token
    And the header "x-correlator" is set to a UUID value
    And the request body is set by default to a request body compliant with the schema

  @otp_ext_validate_code_403_permission_denied
  Scenario: A token without the scope is refused with PERMISSION_DENIED
    Given an authenticationId has been retrieved from a send-code request
    And request body property "$.authenticationId" is set to the value from send-code request
    And the request body property "$.code" is set to the value received in the SMS
    And the header "Authorization" is set to a valid access token without the required scope
    When the HTTP "POST" request is sent
    Then the response status code is 403
    And the response property "$.code" is "PERMISSION_DENIED"
    And the response header "x-correlator" has same value as the request header "x-correlator"

  @otp_ext_validate_code_404_other_client
  Scenario: Another client's authenticationId is not found
    Given an authenticationId has been retrieved from a send-code request
    And request body property "$.authenticationId" is set to the value from send-code request
    And the request body property "$.code" is set to the value received in the SMS
    And the header "Authorization" is set to a valid access token of another client
    When the HTTP "POST" request is sent
    Then the response status code is 404
    And the response property "$.code" is "NOT_FOUND"

  @otp_ext_validate_code_superseded_twice
  Scenario: After three sends only the third authenticationId validates (second one expired)
    Given Three send-code requests have been sequentially triggered for the same phoneNumber
    And request body property "$.authenticationId" is set to the value got for the second send-code request
    And the request body property "$.code" is set to the received in the SMS for the second request
    When the HTTP "POST" request is sent
    Then the response status code is 400
    And the response property "$.code" is "ONE_TIME_PASSWORD_SMS.VERIFICATION_EXPIRED"

  @otp_ext_validate_code_superseded_twice_third_valid
  Scenario: After three sends the third authenticationId validates
    Given Three send-code requests have been sequentially triggered for the same phoneNumber
    And request body property "$.authenticationId" is set to the value got for the third send-code request
    And the request body property "$.code" is set to the received in the SMS for the third request
    When the HTTP "POST" request is sent
    Then the response status code is 204

  @otp_ext_validate_code_concurrent_right_answers
  Scenario: Concurrent right answers: exactly one succeeds
    Given an authenticationId has been retrieved from a send-code request
    And request body property "$.authenticationId" is set to the value from send-code request
    When 6 concurrent requests are sent with the code received in the SMS
    Then exactly 1 of the responses has status 204
    And the other responses have status 400 and property "$.code" "ONE_TIME_PASSWORD_SMS.VERIFICATION_EXPIRED"

  @otp_ext_validate_code_expired_after_ttl
  Scenario: A right code after the validity time is expired
    Given an authenticationId has been retrieved from a send-code request
    And request body property "$.authenticationId" is set to the value from send-code request
    And the request body property "$.code" is set to the value received in the SMS
    And the time elapsed since the send-code exceed the allowed time
    When the HTTP "POST" request is sent
    Then the response status code is 400
    And the response property "$.code" is "ONE_TIME_PASSWORD_SMS.VERIFICATION_EXPIRED"

  @otp_ext_validate_code_400_null_code
  Scenario: A null code is an invalid argument
    Given an authenticationId has been retrieved from a send-code request
    And request body property "$.authenticationId" is set to the value from send-code request
    And the request body is set to "{\"code\": null}"
    When the HTTP "POST" request is sent
    Then the response status code is 400
    And the response property "$.code" is "INVALID_ARGUMENT"
